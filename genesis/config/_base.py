from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Base of every configuration model: unknown keys are errors, values are checked."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)
