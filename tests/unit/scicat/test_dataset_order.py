"""The order rule of post-dataset (scicat/write_order.py), over its inputs alone."""

from __future__ import annotations

from offline_ingestor.scicat.write_order import DatasetOrder


def test_a_new_process_looks_first_until_a_pid_came_back_as_sent() -> None:
    """Nothing is known of SciCat at first: look first; a 201 with our pid allows posting first."""
    order = DatasetOrder()
    assert not order.post_first()
    order.note_created(sent_pid="p/1", stored_pid="p/1")
    assert order.post_first()


def test_one_pid_not_kept_means_looking_first_for_good() -> None:
    """A 201 under another pid is remembered even when later creates keep theirs."""
    order = DatasetOrder()
    order.note_created(sent_pid="p/1", stored_pid="p/1")
    order.note_created(sent_pid="p/2", stored_pid="other/2")
    for n in range(3, 10):
        order.note_created(sent_pid=f"p/{n}", stored_pid=f"p/{n}")
    assert order.keeps_pids is False and not order.post_first()


def test_creates_without_a_pid_teach_nothing_about_pids() -> None:
    """SciCat's own pid for a dataset sent without one says nothing about keeping ours."""
    order = DatasetOrder()
    order.note_created(sent_pid=None, stored_pid="scicat/made-up")
    assert order.keeps_pids is None and not order.post_first()


def test_a_run_of_found_datasets_turns_to_looking_first_and_back() -> None:
    """Two datasets found in a row switch to looking first; new ones switch it back."""
    order = DatasetOrder()
    order.note_created(sent_pid="p/1", stored_pid="p/1")
    order.note_found()
    assert order.post_first()  # one re-run in a stream of new files does not flip it
    order.note_found()
    assert not order.post_first()
    order.note_created(sent_pid="p/2", stored_pid="p/2")
    order.note_created(sent_pid="p/3", stored_pid="p/3")
    assert order.post_first()
