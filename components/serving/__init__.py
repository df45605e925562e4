"""Pulumi ComponentResources per model and what the models share: the namespace, secrets and WAF
(shared.py), each model's stack (model_service.py) composed of one small builder per concern,
and the alert rules and dashboards. May import `infra`, `engines`, `planning` and `config`."""
