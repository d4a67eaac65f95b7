"""The stream bus: consumers hear updates in subscription order, and a failing one harms no other."""

from __future__ import annotations

from homeserver.streams.bus import StreamBus
from homeserver.streams.updates import AccountDataChanged, PushRulesChanged


async def test_consumers_hear_only_their_kind_in_subscription_order():
    bus = StreamBus()
    heard: list[str] = []

    async def second(update: AccountDataChanged) -> None:
        heard.append(f"second {update.position}")

    bus.subscribe(AccountDataChanged, lambda update: heard.append(f"first {update.position}"))
    bus.subscribe(AccountDataChanged, second)
    bus.subscribe(PushRulesChanged, lambda update: heard.append("push rules"))
    await bus.publish(AccountDataChanged("@a:hs", 7))
    assert heard == ["first 7", "second 7"]


async def test_a_failing_consumer_is_logged_and_the_others_still_run(caplog):
    bus = StreamBus()
    heard: list[int] = []

    def broken(update: AccountDataChanged) -> None:
        raise RuntimeError("boom")

    bus.subscribe(AccountDataChanged, broken)
    bus.subscribe(AccountDataChanged, lambda update: heard.append(update.position))
    await bus.publish(AccountDataChanged("@a:hs", 3))
    assert heard == [3]
    assert "boom" in caplog.text


async def test_an_update_nobody_subscribed_to_goes_nowhere():
    bus = StreamBus()
    assert not bus.has_consumers(AccountDataChanged)
    await bus.publish(AccountDataChanged("@a:hs", 1))
