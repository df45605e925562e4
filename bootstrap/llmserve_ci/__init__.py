"""The bootstrap project's code: `settings` (its config, validated), `policies` (the IAM policy
documents, pure), `ci_role` and `ci_access` (one ComponentResource each). Imports nothing of the
platform's `components`: this project is deployed on its own, from bootstrap/."""
