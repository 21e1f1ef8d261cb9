"""Campaigns: the spec an operator applies (:mod:`promod.campaigns.spec`) and the
segment rule language that picks its customers (:mod:`promod.campaigns.segments`).

    from promod.campaigns.spec import load_spec_file
    spec = load_spec_file(Path("config/campaigns/winback-30d.toml"))
"""
