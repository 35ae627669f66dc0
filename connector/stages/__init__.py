"""Stages of the loop (intake, submitter, tracker, sink), written against the ports only."""
