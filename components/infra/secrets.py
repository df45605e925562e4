"""Options of the Kubernetes Secrets the components build from Pulumi secrets."""

import pulumi

# Kubernetes Secrets built from Pulumi secrets say so (the policy pack checks it).
SECRET_DATA = pulumi.ResourceOptions(additional_secret_outputs=["data", "stringData"])
