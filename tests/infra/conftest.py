"""Fills one gap of moto's CloudFormation that the deploy's change sets run into."""

from __future__ import annotations

import pytest
from moto.cloudformation.models import ChangeSet


@pytest.fixture(autouse=True)
def moto_change_sets_update_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """After executing a change set, moto keeps the stack's template and outputs as they were
    (none, for a CREATE change set); AWS has the change set's. Only moto's model is touched."""
    execute = ChangeSet.apply

    def apply(self: ChangeSet) -> None:
        execute(self)
        self.stack.template_dict = self.template_dict
        self.stack.output_map = self.stack._create_output_map()

    monkeypatch.setattr(ChangeSet, "apply", apply)
