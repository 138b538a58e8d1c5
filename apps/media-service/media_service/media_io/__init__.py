"""Media in and out: input demux/decode, output encode/mux, the network relay, file segments, HLS
renditions and caption tracks."""
