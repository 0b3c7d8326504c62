"""What a job left behind, read once and typed: status.json records, log findings, artifacts, the verdict,
and the checkpoint a follow-up job should use."""
