"""The policy pack (`pulumi preview --policy-pack policy`). Constructing the PolicyPack starts the
policy server, so the policies themselves live in policies.py, where tests call them."""

from pulumi_policy import EnforcementLevel, PolicyPack

from policies import POLICIES

PolicyPack(name="llmserve-guardrails", enforcement_level=EnforcementLevel.MANDATORY,
           policies=POLICIES)
