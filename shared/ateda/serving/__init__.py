"""The serving glue every function shares: request scope (metrics, error -> delivery mapping), emitting events,
the metric instruments, process logging."""
