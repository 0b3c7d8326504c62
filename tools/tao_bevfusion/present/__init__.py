"""What a person or an agent reads: text digests, next steps, run comparisons and pictures (viz/)."""
