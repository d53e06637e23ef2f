// The job's five stages (read, decode, align, cut, render) with the overall bar: each stage
// done, active, failed, stopped or still to come. Data comes from job.stageView().

Component({
  properties: {
    stages: { type: Array, value: [] },
    percent: { type: Number, value: 0 },
    line: { type: String, value: "" },
  },
});
