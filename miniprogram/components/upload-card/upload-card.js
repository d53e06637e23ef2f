// One file's card: what to choose, the chosen file's name, size and length, the upload's
// progress and speed, and why it cannot be used, in words. It only shows `view` (from
// UploadSlot.view()) and tells the page what was tapped.

Component({
  properties: {
    view: { type: Object, value: {} },
  },
  methods: {
    onAlbum() {
      this.triggerEvent("pick", { source: "album" });
    },
    onChat() {
      this.triggerEvent("pick", { source: "chat" });
    },
    onRetry() {
      this.triggerEvent("retry", {});
    },
  },
});
