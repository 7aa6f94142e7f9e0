"""What every detached worker shares, under both `engine/` and `deploy/`.

- `detach`: starting a worker in its own session (forked or a fresh interpreter);
- `owner`: pid identity, heartbeats, and the one rule by which a dead owner is told apart from a
  quiet or starting one;
- `logfile`: the log format (`output.log` and its stream records) that workers write and every
  view reads;
- `jobscript`: a step's commands as one script, the same on every runner;
- `code`: the code snapshot a job runs (a git commit plus changes, or an ad-hoc tarball).

An orchestrator (an execution's supervisor, an endpoint's server, the router, a task or a pipeline)
is a small module above this one: it records its owner with `owner.me()`, and its reconcile asks
`owner.dead_owner_reason(...)`.
"""
