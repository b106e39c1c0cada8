"""The embedded runtime that stands in for Knative on one machine (`ateda up`): function servers, broker, bucket
watcher. Never used in the cluster."""
