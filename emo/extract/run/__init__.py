"""The extraction run: plan, the encode loop, the local and distributed engines, summaries."""
