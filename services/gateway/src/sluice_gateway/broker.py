"""The node's view of every account: sessions, subscriptions, retained messages, routing.

Each account is its own namespace (an ``AccountSpace``); nothing here can route a
message from one account's space to another's. Routing is synchronous and allocates
little: one copy per session at the highest granted QoS, with every matching
subscription identifier (MQTT 5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field

from sluice.topicfilter import TopicTree, match_topic
from sluice_gateway.acl import allowed_topic
from sluice_gateway.session import Message, Session, Subscription


class _Copy:
    """What one session gets of one message: highest QoS, retain flag, subscription ids."""

    __slots__ = ("qos", "retain", "sub_ids")

    def __init__(self, qos: int, retain: bool) -> None:
        self.qos = qos
        self.retain = retain
        self.sub_ids: list[int] = []


@dataclass(slots=True)
class Retained:
    message: Message
    stored_at: float


@dataclass
class AccountSpace:
    account: str
    tree: TopicTree[Subscription] = field(default_factory=TopicTree)
    sessions: dict[str, Session] = field(default_factory=dict)
    retained: dict[str, Retained] = field(default_factory=dict)
    share_cursor: dict[tuple[str, str], int] = field(default_factory=dict)

    def empty(self) -> bool:
        return not self.sessions and not self.retained and len(self.tree) == 0


class Broker:
    def __init__(self) -> None:
        self.spaces: dict[str, AccountSpace] = {}
        self.routed = 0
        self.delivered = 0
        self.subscription_count = 0
        # Called with True when the node gets its first subscription, False when the last goes:
        # a node without subscribers has no use for other nodes' messages.
        self.on_interest: Callable[[bool], None] = lambda interested: None
        # Asked before a message is copied to an account's sessions (plan limits).
        self.admit: Callable[[str, Collection[Session]], bool] | None = None

    def _count(self, delta: int) -> None:
        before = self.subscription_count
        self.subscription_count += delta
        if (before == 0) != (self.subscription_count == 0):
            self.on_interest(self.subscription_count > 0)

    def space(self, account: str) -> AccountSpace:
        space = self.spaces.get(account)
        if space is None:
            space = self.spaces[account] = AccountSpace(account)
        return space

    def sessions(self) -> Iterator[Session]:
        for space in self.spaces.values():
            yield from space.sessions.values()

    # -- sessions -------------------------------------------------------------------
    def find_session(self, account: str, client_id: str) -> Session | None:
        space = self.spaces.get(account)
        return space.sessions.get(client_id) if space else None

    def add_session(self, session: Session) -> None:
        self.space(session.account).sessions[session.client_id] = session

    def remove_session(self, session: Session) -> None:
        space = self.spaces.get(session.account)
        if space is None or space.sessions.get(session.client_id) is not session:
            return
        del space.sessions[session.client_id]
        for sub in session.subscriptions.values():
            space.tree.remove(sub.topic_filter, sub)
        removed = len(session.subscriptions)
        session.subscriptions.clear()
        if removed:
            self._count(-removed)
        if space.empty():
            del self.spaces[session.account]

    # -- subscriptions --------------------------------------------------------------
    def subscribe(self, sub: Subscription) -> bool:
        """Add or replace a subscription; True when it is new (retain handling 1 needs it)."""
        session = sub.session
        space = self.space(session.account)
        old = session.subscriptions.get(sub.key)
        if old is not None:
            space.tree.remove(old.topic_filter, old)
        session.subscriptions[sub.key] = sub
        space.tree.add(sub.topic_filter, sub)
        if old is None:
            self._count(1)
        return old is None

    def unsubscribe(self, session: Session, key: str) -> bool:
        sub = session.subscriptions.pop(key, None)
        if sub is None:
            return False
        space = self.spaces.get(session.account)
        if space is not None:
            space.tree.remove(sub.topic_filter, sub)
        self._count(-1)
        return True

    # -- routing --------------------------------------------------------------------
    def route(
        self,
        account: str,
        msg: Message,
        origin: Session | None = None,
        target_device: str | None = None,
    ) -> int:
        """Deliver to every matching session of the account; returns how many got it."""
        space = self.spaces.get(account)
        self.routed += 1
        if space is None or not space.tree:
            return 0
        matches = space.tree.match(msg.topic)
        if not matches:
            return 0
        best: dict[Session, _Copy] = {}
        shared: dict[tuple[str, str], list[Subscription]] | None = None
        for _filter, sub in matches:
            session = sub.session
            if target_device is not None and session.device_id != target_device:
                continue
            if sub.share_group is not None:
                if shared is None:
                    shared = {}
                shared.setdefault((sub.share_group, sub.topic_filter), []).append(sub)
                continue
            if sub.no_local and session is origin:
                continue
            self._collect(best, sub, msg)
        if shared:
            for group_key, members in shared.items():
                chosen = self._pick_shared(space, group_key, members)
                if chosen is not None:
                    self._collect(best, chosen, msg)
        if not best or (self.admit is not None and not self.admit(account, best.keys())):
            return 0
        for session, copy in best.items():
            if session.acl and not allowed_topic(
                session.acl, session.device_id, "subscribe", msg.topic
            ):
                continue
            session.deliver(msg, copy.qos, copy.retain, copy.sub_ids)
        self.delivered += len(best)
        return len(best)

    @staticmethod
    def _collect(best: dict[Session, _Copy], sub: Subscription, msg: Message) -> None:
        qos = sub.qos if sub.qos < msg.qos else msg.qos
        retain = msg.retain and sub.retain_as_published
        copy = best.get(sub.session)
        if copy is None:
            copy = best[sub.session] = _Copy(qos, retain)
        else:
            copy.qos = max(copy.qos, qos)
            copy.retain = copy.retain or retain
        if sub.sub_id is not None:
            copy.sub_ids.append(sub.sub_id)

    @staticmethod
    def _pick_shared(
        space: AccountSpace, group_key: tuple[str, str], members: list[Subscription]
    ) -> Subscription | None:
        """Round-robin over the group's connected members (any member when none is)."""
        online = [m for m in members if m.session.link is not None] or members
        cursor = space.share_cursor.get(group_key, 0)
        space.share_cursor[group_key] = cursor + 1
        return online[cursor % len(online)] if online else None

    # -- retained -------------------------------------------------------------------
    def set_retained(self, account: str, msg: Message) -> None:
        """Keep (or, for an empty payload, clear) the retained message of a topic."""
        if not msg.payload:
            space = self.spaces.get(account)
            if space is not None:
                space.retained.pop(msg.topic, None)
            return
        self.space(account).retained[msg.topic] = Retained(msg, time.monotonic())

    def retained_for(self, account: str, topic_filter: str) -> list[Message]:
        space = self.spaces.get(account)
        if space is None or not space.retained:
            return []
        now = time.monotonic()
        out = []
        for topic, kept in list(space.retained.items()):
            if kept.message.expired(now):
                del space.retained[topic]
            elif match_topic(topic_filter, topic):
                out.append(kept.message)
        return out

    def retained_count(self) -> int:
        return sum(len(s.retained) for s in self.spaces.values())
