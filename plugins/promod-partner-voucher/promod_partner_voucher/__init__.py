"""promod plugin: the ``partner_voucher`` reward provider (vouchers minted at a partner's API).

Installed, it is found through the ``promod`` entry point group; a campaign uses it with
``provider = "partner_voucher"`` and its ``[reward.options]`` (see ``provider.py``)::

    pip install -e plugins/promod-partner-voucher
    promodctl plugins            # lists partner_voucher with provider:partner_voucher
"""

from __future__ import annotations

from typing import Any

from promod import hookimpl
from promod_partner_voucher.provider import PartnerVoucherProvider

__version__ = "0.1.0"
__all__ = ["PartnerVoucherProvider", "__version__", "promod_register_reward_providers"]


@hookimpl
def promod_register_reward_providers() -> list[Any]:
    return [PartnerVoucherProvider()]
