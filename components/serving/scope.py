"""Where a builder of a model's objects puts them: under the model's component (`parent`), with
resource names derived from the component's, in the serving namespace, with the model's labels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi


@dataclass(frozen=True)
class Scope:
    parent: pulumi.Resource
    name: str  # the component's resource name
    model: str  # the model's name (a DNS label): the objects' names derive from it
    namespace: pulumi.Input[str]
    labels: dict[str, str]

    def opts(self, depends_on: Optional[list] = None, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self.parent, depends_on=depends_on or [], **kwargs)

    def metadata(self, name: str, labels: Optional[dict] = None, **extra) -> dict:
        return {"name": name, "namespace": self.namespace, "labels": labels or self.labels, **extra}
