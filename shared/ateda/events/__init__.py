"""Events: the CloudEvent types the platform emits (catalogue, schemas in events/), posting them, Trigger routing."""
