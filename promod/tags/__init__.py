"""Tags kept current by rules, and why each tag is there.

``rules`` validates the rules file of ``promodctl tags apply``; ``store`` holds the
rules' versions, evaluates them (for the customers of new events, or over every
customer), keeps each tag's current reason and the tag history; ``commands`` registers
the ``tags.*`` admin commands. The ``tagger`` actor (``promod/actors/tagger.py``) runs
the evaluations. See docs/tags.md.
"""
