"""The example world that the demo, the tests and the benchmarks ingest into.

One SciCat stand-in seed (the proposals and instruments the example files name, an ingestor
account) and one config builder, so that a fix to either reaches all three.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, TypeVar

import yaml

from ..config import Config, parse_config
from ..examples import EXAMPLES_DIR
from .scicat_standin import ScicatStandin

StandinT = TypeVar("StandinT", bound=ScicatStandin)

__all__ = [
    "INGESTOR_ENV",
    "INGESTOR_PASSWORD",
    "INSTRUMENTS",
    "PROPOSALS",
    "SCHEMAS_DIR",
    "config_data",
    "example_tree",
    "make_config",
    "seed",
    "seeded_standin",
    "write_config",
]

#: What the stand-in answers for the proposals and instruments the example files name. The
#: groups are the real seed's (``testing/real_scicat/accounts.py``): SciCat answers 403 on a
#: proposal read to an account in neither group (and not admin), as the real backend does.
PROPOSALS = (
    {
        "proposalId": "443503",
        "pi_firstname": "Ada",
        "pi_lastname": "Lovelace",
        "pi_email": "ada@ess.example",
        "ownerGroup": "ess_proposal_443503",
        "accessGroups": ["coda"],
    },
    {
        "proposalId": "876380",
        "pi_firstname": "Lise",
        "pi_lastname": "Meitner",
        "pi_email": "lise@ess.example",
        "ownerGroup": "ess_proposal_876380",
        "accessGroups": ["ymir"],
    },
    {
        # Shared with the create groups of the account tests: they may read it, but not the
        # datasets of its files (ownerGroup ess_proposal_999001).
        "proposalId": "999001",
        "pi_firstname": "Emmy",
        "pi_lastname": "Noether",
        "pi_email": "emmy@ess.example",
        "ownerGroup": "ess_proposal_999001",
        "accessGroups": ["owngroup", "privgroup", "group1"],
    },
)
INSTRUMENTS = ({"id": "ess-ymir-0001", "name": "YMIR"}, {"id": "ess-odin-0001", "name": "ODIN"})
#: The stand-in's ingestor account (an admin group member, like ESS's ingestor user).
INGESTOR_USER = "ingestor"
INGESTOR_PASSWORD = "ingestorpw"
#: How an operator's environment gives the worker and the CLI that password.
INGESTOR_ENV = {"OFFLINE_INGESTOR_SCICAT_PASSWORD": INGESTOR_PASSWORD}
#: The shipped schemas (``schemas/`` of the repository, packaged with the examples).
SCHEMAS_DIR = EXAMPLES_DIR / "schemas"


def seeded_standin(**options: Any) -> ScicatStandin:
    """A stand-in (not started yet) holding the example proposals and instruments."""
    options.setdefault("admin_groups", ["admin", INGESTOR_USER])
    return seed(ScicatStandin(**options))


def seed(standin: StandinT) -> StandinT:
    """Give ``standin`` the example proposals and instruments; return it."""
    for proposal in PROPOSALS:
        standin.add_proposal(proposal)
    for instrument in INSTRUMENTS:
        standin.add_instrument(instrument)
    return standin


def example_tree(root: Path) -> list[Path]:
    """Copy the example files into an ESS-like tree (``ess/raw/<instr>/<year>/<proposal>/``)."""
    targets = [
        root / "ess/raw/coda/2024/443503/small-coda.hdf",
        root / "ess/raw/ymir/2024/876380/small-ymir.hdf",
    ]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(EXAMPLES_DIR / target.name, target)
    return targets


def config_data(scicat_url: str, data_root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """The config (as YAML data) for the stand-in: shipped schemas, ``data_root`` allowed.

    Each keyword names a section whose keys replace the defaults'. No password: it comes
    from :data:`INGESTOR_ENV`, or :func:`make_config` puts it in.
    """
    data: dict[str, Any] = {
        "dataset": {"default_owner_group": INGESTOR_USER, "default_access_groups": [INGESTOR_USER]},
        "ingestion": {
            "schemas_directory": str(SCHEMAS_DIR),
            "fallback_schema_file_path": str(SCHEMAS_DIR / "fallback/ess-fallback.imsc.yml"),
            "allowed_data_roots": [str(data_root)],
            "check_if_dataset_exists_by_metadata": False,
            "file_handling": {"ingestor_files_directory": str(data_root / "ingestor")},
        },
        "scicat": {"host": scicat_url, "username": INGESTOR_USER, "timeout": 10},
        "logging": {"format": "json"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data


def make_config(scicat_url: str, data_root: Path, **sections: dict[str, Any]) -> Config:
    """:func:`config_data` as a loaded config, the ingestor password included."""
    data = config_data(scicat_url, data_root, **sections)
    data["scicat"].setdefault("password", INGESTOR_PASSWORD)
    return parse_config(data)


def write_config(path: Path, scicat_url: str, data_root: Path, **sections: dict[str, Any]) -> Path:
    """:func:`config_data` written as an operator's YAML file (password from the environment)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config_data(scicat_url, data_root, **sections)))
    return path
