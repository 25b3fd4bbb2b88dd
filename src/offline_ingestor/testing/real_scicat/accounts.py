"""The accounts, group settings and seed data of the real backend in the tests.

The same as ``shared/reference/scicat-backend/observed-accounts/`` (the five account types:
an admin, the ingestor in ``ADMIN_GROUPS``, a plain create group, a with-pid group, a
privileged-only group), plus three accounts that may also read YMIR's proposal group, so
that the account matrix can ingest YMIR files with every account type.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ACCOUNTS",
    "GROUP_ENV",
    "INSTRUMENTS",
    "JOB_CONFIG",
    "JOB_TYPE",
    "PASSWORDS",
    "PROPOSALS",
    "functional_accounts",
]

#: username -> (roles, global); the password is ``<username>pw``. A role is also a group.
ACCOUNTS: dict[str, tuple[list[str], bool]] = {
    "admin": (["admin"], True),
    "ingestor": (["ingestor"], True),
    "user1": (["group1"], False),
    "owningest": (["owngroup"], False),
    "privingest": (["privgroup"], False),
    # The same three kinds, members of the group that owns YMIR's files too.
    "user1ymir": (["group1", "ess_proposal_876380"], False),
    "ownymir": (["owngroup", "ess_proposal_876380"], False),
    "privymir": (["privgroup", "ymir"], False),
}
PASSWORDS = {name: f"{name}pw" for name in ACCOUNTS}

#: The backend's group settings, as recorded in observed-accounts/README.md.
GROUP_ENV = {
    "ADMIN_GROUPS": "admin,ingestor",
    "CREATE_DATASET_GROUPS": "group1",
    "CREATE_DATASET_WITH_PID_GROUPS": "owngroup",
    "CREATE_DATASET_PRIVILEGED_GROUPS": "privgroup",
    "DELETE_GROUPS": "admin",
    "PROPOSAL_GROUPS": "admin,ingestor",
    "PID_PREFIX": "20.500.12269",
}

#: Proposals the example files and the recordings name (POSTed as admin after start).
PROPOSALS: tuple[dict[str, Any], ...] = (
    {
        "proposalId": "443503",
        "title": "CODA test proposal",
        "pi_firstname": "Ada",
        "pi_lastname": "Lovelace",
        "pi_email": "ada@ess.example",
        "email": "ada@ess.example",
        "ownerGroup": "ess_proposal_443503",
        "accessGroups": ["coda"],
    },
    {
        "proposalId": "876380",
        "title": "YMIR test proposal",
        "pi_firstname": "Lise",
        "pi_lastname": "Meitner",
        "pi_email": "lise@ess.example",
        "email": "lise@ess.example",
        "ownerGroup": "ess_proposal_876380",
        "accessGroups": ["ymir"],
    },
    {
        "proposalId": "999001",
        "title": "perm test proposal",
        "pi_firstname": "Emmy",
        "pi_lastname": "Noether",
        "pi_email": "emmy@ess.example",
        "email": "emmy@ess.example",
        "ownerGroup": "ess_proposal_999001",
        "accessGroups": ["owngroup", "privgroup", "group1"],
    },
)
INSTRUMENTS: tuple[dict[str, Any], ...] = (
    {"uniqueName": "ess-ymir", "name": "YMIR"},
    {"uniqueName": "ess-odin", "name": "ODIN"},
    {"uniqueName": "ess-coda", "name": "CODA"},
)


#: The job type the tests' schemas name (``scicat_job``): the ingestor account may create it.
JOB_TYPE = "ingest-followup"
#: The backend's ``JOB_CONFIGURATION_FILE`` (YAML is a superset of JSON): one job type, created
#: by the ingestor's group for datasets it may read (``#datasetAccess``: an admin passes, others
#: must reach every dataset listed), updated by the same group; its only action is a log line.
JOB_CONFIG: dict[str, Any] = {
    "configVersion": "offline-ingestor-tests v1",
    "jobs": [
        {
            "jobType": JOB_TYPE,
            "create": {"auth": "@ingestor", "actions": [{"actionType": "log"}]},
            "update": {"auth": "@ingestor", "actions": [{"actionType": "log"}]},
        }
    ],
}


def functional_accounts() -> list[dict[str, Any]]:
    """The content of ``FUNCTIONAL_ACCOUNTS_FILE``."""
    return [
        {
            "username": name,
            "email": f"{name}@test.local",
            "password": PASSWORDS[name],
            "role": roles,
            "global": is_global,
        }
        for name, (roles, is_global) in ACCOUNTS.items()
    ]
