"""The positions of each room's newest events, kept in memory from the persister's commits.

A long poll woken by a message asks two questions of the events stream before it reads any
timeline: which of the user's quiet rooms got events since its token, and whether a room got more
events than its timeline shows (the gapless pages). Both were a database read on every wake;
here they are answered from memory whenever memory holds every event of the range.

The persister is the only writer of the events stream and commits in position order, and it
hands every commit here before anyone is woken (`record`). So once the first commit after start
is recorded, every event past `floor` is known, up to `upto` (the newest recorded position). A
range is answered from memory only when it lies inside that window for every room asked about;
otherwise the caller reads the database, as before. Each room keeps its newest `per_room`
positions and at most `max_rooms` rooms are kept: what is dropped raises the floor of that room
(or of every unkept room), so an answer never misses an event.

The same commits tell whose membership moved in current state (their own membership events, and
every key of a current-state change, a state reset included): a user's memberships read at one
position hold at a later one when memory shows no move in between. A change of the whole current
state (a join over federation) or a partial-state room completing counts as everyone's move.

Events that never show on a timeline (outliers, soft-failed events) are recorded as moving the
stream, not the room; a rejected event counts as the room's (a false "news" costs one empty read,
never a missed event).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence

PER_ROOM = 64
MAX_ROOMS = 20_000
MAX_USERS = 50_000
# (room ID, stream position, whether it shows on the timeline, users whose membership it moves;
# None: anyone's may have moved).
Commit = tuple[str, int, bool, Iterable[str] | None]


class RecentEvents:
    def __init__(self, *, per_room: int = PER_ROOM, max_rooms: int = MAX_ROOMS, max_users: int = MAX_USERS) -> None:
        self._per_room = per_room
        self._max_rooms = max_rooms
        self._max_users = max_users
        # user_id -> the newest position their membership moved at; users least lately moved first.
        self._moved: OrderedDict[str, int] = OrderedDict()
        # Memberships of users no longer kept in `_moved` are only known past this.
        self._moved_evicted = 0
        # Everyone's membership may have moved at this position.
        self._all_moved = 0
        # room_id -> (positions, newest first dropped or -inf), rooms used least lately first.
        self._rooms: OrderedDict[str, tuple[deque[int], list[int]]] = OrderedDict()
        # Every event past `floor` up to `upto` was recorded; None before the first commit.
        self.floor: int | None = None
        self.upto = 0
        # The newest position of a room no longer kept: unkept rooms are known only past it.
        self._evicted_upto: int | None = None

    def record(self, commits: Iterable[Commit]) -> None:
        """Note committed events, in commit order (see `Commit`). Positions at or below zero
        (backfilled history) are not part of the live stream."""
        for room_id, position, on_timeline, moved in commits:
            if position <= 0:
                continue
            if self.floor is None:
                self.floor = position - 1
            self.upto = max(self.upto, position)
            if moved is None:
                self._all_moved = position
            else:
                for user_id in moved:
                    self._moved[user_id] = position
                    self._moved.move_to_end(user_id)
                while len(self._moved) > self._max_users:
                    self._moved_evicted = max(self._moved_evicted, self._moved.popitem(last=False)[1])
            if not on_timeline:
                continue
            kept = self._rooms.get(room_id)
            if kept is None:
                kept = self._rooms[room_id] = (deque(), [self.floor])
                while len(self._rooms) > self._max_rooms:
                    _, (positions, dropped) = self._rooms.popitem(last=False)
                    newest = positions[-1] if positions else dropped[0]
                    self._evicted_upto = max(self._evicted_upto or newest, newest)
            else:
                self._rooms.move_to_end(room_id)
            positions, dropped = kept
            positions.append(position)
            if len(positions) > self._per_room:
                dropped[0] = positions.popleft()

    def _room_floor(self, room_id: str) -> int | None:
        if self.floor is None:
            return None
        kept = self._rooms.get(room_id)
        if kept is not None:
            return max(self.floor, kept[1][0])
        return self.floor if self._evicted_upto is None else max(self.floor, self._evicted_upto)

    def covers(self, room_ids: Sequence[str], after: int, upto: int) -> bool:
        """Whether memory holds every event of these rooms with `after < position <= upto`."""
        if self.floor is None or upto > self.upto:
            return False
        for room_id in room_ids:
            room_floor = self._room_floor(room_id)
            if room_floor is None or after < room_floor:
                return False
        return True

    def _in_range(self, room_id: str, after: int, upto: int) -> list[int]:
        kept = self._rooms.get(room_id)
        if kept is None:
            return []
        return [p for p in kept[0] if after < p <= upto]

    def rooms_with_new_events(self, room_ids: Sequence[str], after: int, upto: int) -> dict[str, int] | None:
        """room_id -> newest position in the range, for the rooms with events in it; None when
        memory does not cover the range (ask the database)."""
        if not self.covers(room_ids, after, upto):
            return None
        out = {}
        for room_id in room_ids:
            found = self._in_range(room_id, after, upto)
            if found:
                out[room_id] = found[-1]
        return out

    def first_overflowing(self, room_ids: Sequence[str], after: int, upto: int, per_room: int
                          ) -> tuple[bool, int | None]:
        """(covered, position): the lowest position at which one of the rooms holds its
        `per_room + 1`-th event of the range (None: none holds more than `per_room`).
        `covered` is False when memory does not hold the range (ask the database)."""
        if not self.covers(room_ids, after, upto):
            return False, None
        lowest = None
        for room_id in room_ids:
            found = self._in_range(room_id, after, upto)
            if len(found) > per_room:
                position = found[per_room]
                lowest = position if lowest is None else min(lowest, position)
        return True, lowest

    def memberships_moved_everywhere(self) -> None:
        """Anyone's membership may have moved just now (a partial-state room got its full state
        outside the persister): no range up to the newest position shows memberships unmoved."""
        self._all_moved = max(self._all_moved, self.upto + 1)

    def membership_unmoved(self, user_id: str, after: int, upto: int) -> bool:
        """Whether memory shows the user's membership moved nowhere in `after < position <= upto`
        (False also when memory does not hold the range)."""
        if self.floor is None or after < self.floor or upto > self.upto:
            return False
        last = self._moved.get(user_id, self._moved_evicted)
        return max(last, self._all_moved) <= after
