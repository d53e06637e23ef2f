// A fine shift of the music against the picture, in milliseconds: steps of 1 and 10 ms either
// way from the job's current nudge, within ±2000 ms, then one tap renders the video again.

const LIMIT_MS = 2000;

function clamp(value) {
  return Math.max(-LIMIT_MS, Math.min(LIMIT_MS, Math.round(value)));
}

function describe(ms) {
  if (ms > 0) return `音乐推迟 ${ms} 毫秒`;
  if (ms < 0) return `音乐提前 ${-ms} 毫秒`;
  return "不偏移";
}

Component({
  properties: {
    value: { type: Number, value: 0 },
    disabled: { type: Boolean, value: false },
  },
  data: {
    ms: 0,
    text: "0",
    words: describe(0),
    changed: false,
  },
  observers: {
    value(value) {
      this.show(clamp(Number(value) || 0));
    },
  },
  methods: {
    show(ms) {
      this.setData({
        ms,
        text: ms > 0 ? `+${ms}` : String(ms),
        words: describe(ms),
        changed: ms !== clamp(Number(this.data.value) || 0),
      });
    },
    onStep(event) {
      this.show(clamp(this.data.ms + Number(event.currentTarget.dataset.step)));
    },
    onApply() {
      if (this.data.disabled || !this.data.changed) return;
      this.triggerEvent("apply", { nudgeMs: this.data.ms });
    },
  },
});
