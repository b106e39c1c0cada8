"""Developer tools: synthetic alerts and benchmarks."""
