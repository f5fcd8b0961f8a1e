"""The measurement core: hardware -> meter -> tracker. Never imports an ML framework."""
