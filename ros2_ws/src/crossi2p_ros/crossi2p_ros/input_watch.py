"""Which of the node's inputs has received nothing, or has stopped, and what the ROS graph says about why.

A node subscribed to a topic nobody publishes, or published with another type (a
sensor_msgs/CompressedImage on the image topic without ``compressed_image:=true``), or with a QoS
its subscription does not accept, hears nothing and says nothing. ``InputWatch`` says which
inputs have had no message at all ``input_timeout_s`` after start-up (again every
``repeat_s`` while still nothing came); ``silent_input_warning`` writes the warning for one of
them from what the graph holds (the publishers of every topic, ``Publisher``): the type the topic
really has and the parameter to set, a QoS the subscription refuses, or similarly named topics
that carry the expected type. The rig's other cameras (``rig_calibration``) are watched too; their
advice names the rig file's entry instead of a node parameter.

An input that did receive and then has nothing for ``input_timeout_s`` (a camera driver that
stalled, a LiDAR unplugged, a bag that ended) is ``InputWatch.stopped``; ``stopped_input_warning``
says whether its publisher is still in the graph.

Plain Python (no rclpy): the node gathers the graph (``CalibrationNode._graph_publishers``).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

ALTERNATE_TYPES = {
    "sensor_msgs/msg/Image": ("sensor_msgs/msg/CompressedImage", "compressed_image:=true"),
    "sensor_msgs/msg/CompressedImage": ("sensor_msgs/msg/Image", "compressed_image:=false"),
}
"""Expected type -> (the other image type, the parameter setting that subscribes to it)."""
MAX_SIMILAR = 3
"""At most this many similarly named topics are listed."""


@dataclass(frozen=True)
class WatchedInput:
    """One subscribed input."""

    topic: str
    msgtype: str
    """ROS type name, ``package/msg/Name``."""
    parameter: str
    """The node parameter that names the topic (``image_topic``), or the rig file's key
    (``cameras[1].image_topic``) when ``rig_file`` is set."""
    rig_file: str = ""
    """The rig file (``rig_calibration``) whose entry names the topic; '' for a node parameter."""

    @property
    def named_by(self) -> str:
        """What names the topic: ``parameter image_topic`` or ``cameras[1].image_topic in rig.yaml``."""
        return f"{self.parameter} in {self.rig_file}" if self.rig_file else f"parameter {self.parameter}"

    def set_to(self, topic: str = "") -> str:
        """The advice to name ``topic`` instead (or another topic, without one): ``set
        image_topic:=/x`` for a node parameter, ``set cameras[1].image_topic: /x in rig.yaml`` for a
        rig file's entry."""
        if self.rig_file:
            return f"set {self.parameter}{': ' + topic if topic else ''} in {self.rig_file}"
        return f"set {self.parameter}{':=' + topic if topic else ''}"


@dataclass(frozen=True)
class Publisher:
    """One publisher in the ROS graph (another node's)."""

    topic: str
    msgtype: str
    node: str
    """Fully qualified node name."""
    best_effort: bool
    """Its QoS reliability is best effort (a reliable subscription does not match it)."""


class InputWatch:
    """Inputs that have received no message at all (see module docstring).

    Args:
        inputs: the subscribed inputs.
        timeout_s: an input with nothing after this long since ``start_s`` is due for a warning.
        repeat_s: while still nothing came, due again this long after the last warning.
        start_s: when the subscriptions came up (monotonic seconds).
    """

    def __init__(self, inputs: list[WatchedInput], timeout_s: float, repeat_s: float, start_s: float):
        self.inputs = list(inputs)
        self.timeout_s = timeout_s
        self.repeat_s = repeat_s
        self.start_s = start_s
        self._warned_s: dict[WatchedInput, float] = {}
        self._seen: dict[WatchedInput, tuple[int, float]] = {}    # (count, when it last changed)
        self._stop_warned_s: dict[WatchedInput, float] = {}

    def due(self, now_s: float, received: dict[WatchedInput, int]) -> list[WatchedInput]:
        """The inputs to warn about now (``received``: messages received so far per input); each
        is then counted as warned at ``now_s``."""
        if now_s - self.start_s < self.timeout_s:
            return []
        out = []
        for watched in self.inputs:
            last = self._warned_s.get(watched)
            if received.get(watched, 0) == 0 and (last is None or now_s - last >= self.repeat_s):
                self._warned_s[watched] = now_s
                out.append(watched)
        return out

    def stopped(self, now_s: float, received: dict[WatchedInput, int]) -> list[tuple[WatchedInput, float]]:
        """``(input, seconds without a message)`` for each input that received before and has had
        nothing for ``timeout_s`` (as seen by the calls: call it at least every ``timeout_s / 2``),
        due now: once when it stops, again every ``repeat_s`` while it stays silent; a message
        ends the stop."""
        out = []
        for watched in self.inputs:
            count = received.get(watched, 0)
            seen = self._seen.get(watched)
            if seen is None or count != seen[0]:
                self._seen[watched] = (count, now_s)
                self._stop_warned_s.pop(watched, None)
                continue
            silent_s = now_s - seen[1]
            last = self._stop_warned_s.get(watched)
            if count > 0 and silent_s >= self.timeout_s and (last is None or now_s - last >= self.repeat_s):
                self._stop_warned_s[watched] = now_s
                out.append((watched, silent_s))
        return out


def stopped_input_warning(watched: WatchedInput, silent_s: float, received: int, publishers: list[Publisher]) -> str:
    """One line: ``watched.topic`` has had no message for ``silent_s`` seconds after ``received``
    messages, and whether the graph (``publishers``, other nodes' only) still has its publisher."""
    head = (f"no message on {watched.topic} ({watched.msgtype}) for {silent_s:.0f} s, after {received} received; "
            f"the calibration waits (the last estimate stays published)")
    nodes = sorted({p.node for p in publishers if p.topic == watched.topic and p.msgtype == watched.msgtype})
    if nodes:
        return (f"{head}: its publisher ({', '.join(nodes)}) is still in the ROS graph: the driver may have "
                f"stalled or lost its sensor")
    return f"{head}: nobody publishes it any more (the driver or the bag stopped)"


def silent_input_warning(watched: WatchedInput, silent_s: float, publishers: list[Publisher],
                         reliable: bool, subscribed: frozenset[str] = frozenset()) -> str:
    """One line: nothing arrived on ``watched.topic`` in ``silent_s`` seconds, and why, from the
    graph's ``publishers`` (other nodes' only) and whether the subscription is ``reliable``;
    ``subscribed``: the node's other inputs' topics, never suggested in its place."""
    head = (f"nothing received on {watched.topic} ({watched.msgtype}, {watched.named_by}) in the "
            f"{silent_s:.0f} s since start-up")
    on_topic = [p for p in publishers if p.topic == watched.topic]
    other_types = sorted({p.msgtype for p in on_topic if p.msgtype != watched.msgtype})
    if other_types:
        alternate, setting = ALTERNATE_TYPES.get(watched.msgtype, ("", ""))
        fix = (f"set {setting}" if other_types == [alternate]
               else f"expected {watched.msgtype}: {watched.set_to()} to a topic of that type")
        return f"{head}: {watched.topic} exists with type {', '.join(other_types)}; {fix}"
    if on_topic:
        nodes = ", ".join(sorted({p.node for p in on_topic}))
        if reliable and all(p.best_effort for p in on_topic):
            return (f"{head}: its publisher ({nodes}) is best effort, which the subscription (qos:=reliable) "
                    f"does not accept; set qos:=sensor_data")
        return f"{head}: it has a publisher of {watched.msgtype} ({nodes}), but no message has arrived yet"
    return f"{head}: nobody publishes {watched.topic}; {_similar_topics(watched, publishers, subscribed)}"


def _similar_topics(watched: WatchedInput, publishers: list[Publisher], subscribed: frozenset[str]) -> str:
    """Topics carrying the expected type (or the other image type), the most similarly named first."""
    def ranked(msgtype: str) -> list[str]:
        # not another of the node's inputs (a rig's other camera), nor another calibration node's own
        # overlay image (``<node>/overlay``): no camera stream
        topics = {p.topic for p in publishers if p.msgtype == msgtype and p.topic != watched.topic
                  and p.topic not in subscribed and p.topic != p.node.rstrip("/") + "/overlay"}
        return sorted(topics, key=lambda t: (-difflib.SequenceMatcher(None, watched.topic, t).ratio(), t))

    same = ranked(watched.msgtype)
    if len(same) == 1:
        return f"{same[0]} carries {watched.msgtype}: {watched.set_to(same[0])}?"
    if same:
        more = f" (and {len(same) - MAX_SIMILAR} more)" if len(same) > MAX_SIMILAR else ""
        return f"topics carrying {watched.msgtype}: {', '.join(same[:MAX_SIMILAR])}{more}; {watched.set_to()}"
    alternate, setting = ALTERNATE_TYPES.get(watched.msgtype, ("", ""))
    other = ranked(alternate) if alternate else []
    if other:
        return f"{other[0]} carries {alternate}: {watched.set_to(other[0])} and {setting}?"
    return (f"no topic in the ROS graph carries {watched.msgtype} (is the driver or the bag playing, "
            f"with the same ROS_DOMAIN_ID?)")
