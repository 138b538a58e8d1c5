"""Socket.IO namespace, event names and protocol version."""

PROTOCOL_VERSION = 1
# Minor versions add optional fields only; a v1.0 peer ignores them and is still served.
# 1.1: fragment:data `deadline_ms`, error code `deadline_exceeded`, `timings_ms.queue`,
#      init ack `protocol_minor`.
# 1.2: init ack `capabilities.voices` (the voice of each target language) and `capabilities.translators`
#      (the MT engine of each target language).
# 1.3: fragment:data `late_start_ms`, fragment:processed `start_offset_ms` (a dub that starts late
#      instead of a fallback).
# 1.4: server event `server:draining` and error code `draining` (a replica that is shutting down
#      refuses new streams and asks its clients to move theirs to another replica).
# 1.5: fragment:data `continues` (the span ends at a forced cut: the speech goes on in the next
#      fragment, which the server may hear with this one's audio as context).
PROTOCOL_MINOR = 5
NAMESPACE = "/sts"

# Events, client -> server (all acknowledged).
STREAM_INIT = "stream:init"
FRAGMENT_DATA = "fragment:data"
STREAM_END = "stream:end"
# Events, server -> client.
FRAGMENT_PROCESSED = "fragment:processed"
STREAM_BACKPRESSURE = "stream:backpressure"
SERVER_DRAINING = "server:draining"  # v1.4
ERROR = "error"
