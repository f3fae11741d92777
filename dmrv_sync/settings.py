"""The one settings object. Every value comes from the environment (or a `.env` file).

Secrets are `SecretStr`: their repr and str are masked, so printing the settings never shows them.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ISOMETRIC_BASE_URLS: dict[str, str] = {
    "sandbox": "https://api.sandbox.isometric.com/mrv/v0",
    "production": "https://api.isometric.com/mrv/v0",
}

# The embedded default's credentials: the local emulator accepts whatever the settings say, so these
# only have to agree with themselves. They are not secrets of any real registry.
DEMO_CLIENT_SECRET = "demo-client-secret"
DEMO_ACCESS_TOKEN = "demo-access-token"
DEMO_PROJECT_ID = "prj_1DEMOPROJECT0001"
DEMO_GHG_ENTRY_TEMPLATE_ID = "rvt_1DEMOTEMPLATE001"

# What dmrv-sync measures per credit batch and sends as datapoints: the names ISOMETRIC_TEMPLATE_INPUTS
# maps the template's inputs to. applied_biochar_mass: the summed applied_mass_kg of the batch's applied
# applications, in t; organic_carbon_fraction: their production runs' organic carbon fraction, weighted by
# applied mass.
MONITORED_VALUES = ("applied_biochar_mass", "organic_carbon_fraction")
# The demo template's inputs (the emulator provisions them with rvt_1DEMOTEMPLATE001).
DEMO_TEMPLATE_INPUTS: dict[str, dict[str, str]] = {
    "rtc_1DEMOCOMPONENT01": {"biochar_mass_applied": "applied_biochar_mass"},
    "rtc_1DEMOCOMPONENT02": {"organic_carbon_fraction": "organic_carbon_fraction"},
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    dmrv_data_dir: Path = Field(
        default=Path(".dmrv"), description="Where the embedded defaults keep their files (SQLite, logs)."
    )
    dmrv_database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the DMRV database. Default: a SQLite file in DMRV_DATA_DIR.",
    )

    isometric_project_id: str = DEMO_PROJECT_ID
    isometric_client_secret: SecretStr = SecretStr(DEMO_CLIENT_SECRET)
    isometric_access_token: SecretStr = SecretStr(DEMO_ACCESS_TOKEN)
    isometric_environment: Literal["sandbox", "production"] = "sandbox"
    isometric_base_url: str | None = Field(
        default=None, description="Overrides the environment's URL; the local emulator is set here."
    )
    isometric_ghg_entry_template_id: str = Field(
        default=DEMO_GHG_ENTRY_TEMPLATE_ID,
        description="The GHG entry template (rvt_...) that credit batches are filed under.",
    )
    # NoDecode: parsed by the validator below, so a bad value gets an error that names the variable.
    isometric_template_inputs: Annotated[dict[str, dict[str, str]], NoDecode] = Field(
        default_factory=lambda: {k: dict(v) for k, v in DEMO_TEMPLATE_INPUTS.items()},
        description='JSON {"<component id>": {"<input key>": "<monitored value>"}}: what each template input '
        "of a GHG entry gets.",
    )
    isometric_requests_per_second: float = Field(
        default=2.0, gt=0, description="Request budget shared by every process using this credential."
    )
    isometric_rate_limit_burst: int = Field(
        default=1,
        ge=1,
        description="How many requests the registry's limiter lets through at once. 1 (the strictest, a "
        "token bucket of one): every interval gets a few milliseconds of allowance for arrival jitter. "
        "2 or more: requests are paced at exactly the rate, the bucket absorbs the jitter.",
    )

    # Validation limits (Isometric's biochar protocol, as public summaries report it): defaults a user
    # can change, not law.
    validation_max_h_corg_ratio: float = Field(default=0.5, gt=0)
    validation_max_o_corg_ratio: float = Field(default=0.2, gt=0)
    validation_max_production_days: float = Field(default=31, gt=0)

    sync_concurrency: int = Field(default=8, ge=1, le=64, description="Entities synced at once in one run.")
    sync_lease_seconds: float = Field(
        default=300, gt=0, description="How long a worker may hold an entity before others may take over."
    )

    @field_validator("isometric_project_id")
    @classmethod
    def _project_prefix(cls, value: str) -> str:
        if not value.startswith("prj_"):
            raise ValueError(f"ISOMETRIC_PROJECT_ID must start with 'prj_' (got {value!r})")
        return value

    @field_validator("isometric_template_inputs", mode="before")
    @classmethod
    def _template_inputs_json(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ValueError(
                f"ISOMETRIC_TEMPLATE_INPUTS is not valid JSON ({exc}); expected "
                '{"<component id>": {"<input key>": "<monitored value>"}}'
            ) from None

    @field_validator("isometric_template_inputs")
    @classmethod
    def _template_inputs_known(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = [
            f"{component_id}.{input_key} = {name!r}"
            for component_id, inputs in value.items()
            for input_key, name in inputs.items()
            if name not in MONITORED_VALUES
        ]
        if unknown:
            raise ValueError(
                f"ISOMETRIC_TEMPLATE_INPUTS names unknown monitored values: {'; '.join(unknown)} "
                f"(known: {', '.join(MONITORED_VALUES)})"
            )
        empty = [component_id for component_id, inputs in value.items() if not inputs]
        if empty:
            raise ValueError(f"ISOMETRIC_TEMPLATE_INPUTS: component {', '.join(empty)} maps no inputs")
        return value

    @property
    def database_url(self) -> str:
        """The DMRV database URL; the SQLite default's directory is created on first use."""
        if self.dmrv_database_url:
            return self.dmrv_database_url
        self.dmrv_data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(self.dmrv_data_dir / 'dmrv.sqlite3').resolve()}"

    @property
    def isometric_url(self) -> str:
        return (self.isometric_base_url or ISOMETRIC_BASE_URLS[self.isometric_environment]).rstrip("/")

    @property
    def secret_values(self) -> tuple[str, ...]:
        """Every configured secret, for redaction of texts that leave the process."""
        return tuple(
            s.get_secret_value()
            for s in (self.isometric_client_secret, self.isometric_access_token)
            if s.get_secret_value()
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
