"""Running the stages: the run loop, the embedded runner, capture, the distributed sequencer, reports."""
