"""Offline evaluation of Genesis models against labelled data.

``genesis.eval.detection`` measures a person detector against MOTChallenge ground truth
(precision and recall at an IoU threshold, recall on clearly visible people, time per frame).
These are pure functions over files and detector objects: nothing here touches the pipeline,
the database or the network, so the same numbers come out in CI and on a laptop.
"""
