"""Audio on the media timeline: the timeline itself, VAD and the segmenter that cuts speech, the
mixer that lays dubs over the original, DSP and loudness helpers."""
