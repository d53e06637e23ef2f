// One row of "my jobs": when, how it stands, the confidence or why it failed; open or delete.
// Data comes from job.jobSummary().

Component({
  properties: {
    item: { type: Object, value: {} },
  },
  methods: {
    onOpen() {
      this.triggerEvent("open", { id: this.data.item.id });
    },
    onRemove() {
      this.triggerEvent("remove", { id: this.data.item.id });
    },
  },
});
