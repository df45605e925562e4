"""Pure decisions about models and GPUs, no Pulumi: the GPU catalog, the model lock and its Hub
client, the planner (shards, engine limits, cost, cold start) and the stack's plans.
May import `config`; nothing above it."""
