"""Access control: who the caller is, and what they may do to which repository."""
