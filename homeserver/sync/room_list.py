"""Which rooms a sync covers, and over which stream ranges: pure decisions over membership rows.

This is the part of /sync that simplified sliding sync reuses: given the user's memberships now,
their membership changes since the token, and the rooms with new events, decide each room's
section (join/invite/knock/leave) and the ranges its timeline and state are read over. Rendering a
room from a `RoomSyncEntry` is the engine's separate job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from storage.stores.sync import MembershipRow

JOIN, INVITE, KNOCK, LEAVE = "join", "invite", "knock", "leave"
# The /sync section each membership belongs in; bans are reported as leaves.
SECTION_OF = {"join": JOIN, "invite": INVITE, "knock": KNOCK, "leave": LEAVE, "ban": LEAVE}


@dataclass(frozen=True, slots=True)
class RoomSyncEntry:
    """One room of a sync response and the ranges to read it over.

    `timeline_after` is the exclusive lower bound of the timeline (None: the newest events whatever
    their age); `state_after` is the position whose state the `state` section is a delta from (None:
    full state). Both end at `upto`: now for joined rooms, the user's leave for rooms they left.
    """

    room_id: str
    section: str
    membership: MembershipRow
    upto: int
    timeline_after: int | None
    state_after: int | None
    # The room became this membership within the range (newly joined, invited, left...).
    changed: bool
    # For leaves: the user never was joined within what this response covers, so no history or state
    # of the room may be shown beyond their own membership events.
    never_joined: bool = False


def initial_entries(memberships: Mapping[str, MembershipRow], upto: int, *, include_leave: bool,
                    forgotten: Iterable[str] = ()) -> list[RoomSyncEntry]:
    """Every room of an initial sync."""
    forgotten = set(forgotten)
    entries = []
    for room_id, row in sorted(memberships.items()):
        section = SECTION_OF.get(row.membership)
        if section is None:
            continue
        if section == LEAVE:
            if not include_leave or room_id in forgotten:
                continue
            entries.append(RoomSyncEntry(room_id, LEAVE, row, row.stream_ordering, None, None, changed=False))
        elif section == JOIN:
            entries.append(RoomSyncEntry(room_id, JOIN, row, upto, None, None, changed=False))
        else:
            entries.append(RoomSyncEntry(room_id, section, row, row.stream_ordering, None, None,
                                         changed=False))
    return entries


def incremental_entries(memberships: Mapping[str, MembershipRow], changes: Sequence[MembershipRow],
                        before: Mapping[str, MembershipRow], since: int, upto: int, *, full_state: bool,
                        forgotten: Iterable[str] = ()) -> list[RoomSyncEntry]:
    """The rooms an incremental sync from `since` to `upto` may report.

    `changes` are the user's membership events in (since, upto]; `before` their membership at
    `since` in the rooms those changes touch. Joined rooms are all listed (the engine drops those
    with nothing new); invites, knocks and leaves only when they happened in the range.
    """
    forgotten = set(forgotten)
    changed_rooms: dict[str, list[MembershipRow]] = {}
    for row in changes:
        changed_rooms.setdefault(row.room_id, []).append(row)
    entries = []
    for room_id, row in sorted(memberships.items()):
        section = SECTION_OF.get(row.membership)
        if section is None:
            continue
        history = changed_rooms.get(room_id, [])
        previous = before.get(room_id)
        was_joined = previous is not None and previous.membership == "join"
        if section == JOIN:
            # Left and joined again since the token counts as newly joined too (as in Synapse): what
            # happened while away may be invisible to the user, so they get the room afresh.
            newly_joined = bool(history) and (not was_joined or any(h.membership != "join" for h in history))
            if newly_joined:
                entries.append(RoomSyncEntry(room_id, JOIN, row, upto, None, None, changed=True))
            else:
                entries.append(RoomSyncEntry(room_id, JOIN, row, upto, since, None if full_state else since,
                                             changed=False))
        elif section in (INVITE, KNOCK):
            if row.stream_ordering > since or full_state:
                entries.append(RoomSyncEntry(room_id, section, row, row.stream_ordering, None, None,
                                             changed=row.stream_ordering > since))
        else:
            if room_id in forgotten or row.stream_ordering <= since:
                continue
            joined_in_range = any(h.membership == "join" for h in history)
            if was_joined:
                entries.append(RoomSyncEntry(room_id, LEAVE, row, row.stream_ordering, since,
                                             None if full_state else since, changed=True))
            elif joined_in_range:
                # Joined and left again since the token: the client never saw the room, so it
                # gets it whole, as for a newly joined room, up to the leave.
                entries.append(RoomSyncEntry(room_id, LEAVE, row, row.stream_ordering, None, None,
                                             changed=True))
            else:
                entries.append(RoomSyncEntry(room_id, LEAVE, row, row.stream_ordering, since, None,
                                             changed=True, never_joined=True))
    return entries


def rooms_needing_prior_membership(memberships: Mapping[str, MembershipRow],
                                   changes: Sequence[MembershipRow]) -> list[str]:
    """Rooms whose membership at the token must be looked up to classify them."""
    return sorted({row.room_id for row in changes} & set(memberships))
