"""Launch, supervise and reconcile executions; the runtime contract; tasks and pipelines."""
