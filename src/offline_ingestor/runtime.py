"""What the steps need besides the job: config, loaded schemas, one SciCat client."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checksums import Progress
from .config import Config
from .schema import SchemaSet, load_schemas
from .scicat import ScicatClient

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """Built once per process (worker child or CLI run) and shared by every job."""

    config: Config
    schemas: SchemaSet
    scicat: ScicatClient
    #: Called with byte counts while the data file is hashed (progress bars).
    progress: Progress | None = None
    #: Build everything but write nothing: no SciCat POST, no hash file on disk.
    dry_run: bool = False
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Runtime:
        """Load the schemas and open the SciCat session the config names."""
        fallback = config.ingestion.fallback_schema_file_path
        schemas = load_schemas(config.schemas_dir, config.resolve(fallback) if fallback else None)
        return cls(config=config, schemas=schemas, scicat=ScicatClient(config.scicat))

    def schema_problems(self) -> list[str]:
        """One line per schema file that failed to load."""
        return [broken.message for broken in self.schemas.broken]

    @property
    def schemas_dir(self) -> Path:
        return self.config.schemas_dir
