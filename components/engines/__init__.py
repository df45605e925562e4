"""What a serving engine needs to run, as pure functions of a plan: its image, settings, ports,
probes, resources and timeouts (TGI today), and the vocabulary the stack contract takes from
them. May import `planning` and `config`; nothing above."""
