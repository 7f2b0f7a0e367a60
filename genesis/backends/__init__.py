"""Model backends behind small interfaces: person detectors, face detectors, face embedders."""
