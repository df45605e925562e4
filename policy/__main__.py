"""The policy pack (`pulumi preview --policy-pack policy`). Constructing the PolicyPack starts the
policy server, so the policies themselves live in policies.py, where tests call them."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

# The pack runs from the repository's checkout (`pulumi preview --policy-pack policy`): the
# rules it shares with the stack config are imported from there.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from policies import POLICIES

PolicyPack(name="llmserve-guardrails", enforcement_level=EnforcementLevel.MANDATORY,
           policies=POLICIES)
