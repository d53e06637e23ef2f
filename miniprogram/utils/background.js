// The app's trips to the background, as events: App's onHide/onShow call `hidden()`/`shown()`
// and whatever is sending listens. WeChat suspends a backgrounded app's network after a few
// seconds, so an upload stops itself cleanly and goes on from the server's offset on return.
// The network coming back (wx.onNetworkStatusChange) is an event too: "online" wakes an upload
// that waits to retry, and sends again one that gave up for want of a network.

const listeners = new Set();
let inBackground = false;

function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function emit(event) {
  for (const listener of Array.from(listeners)) {
    try {
      listener(event);
    } catch (error) {
      // One listener's failure must not keep the others from hearing.
    }
  }
}

function hidden() {
  inBackground = true;
  emit("hide");
}

function shown() {
  const was = inBackground;
  inBackground = false;
  if (was) emit("show");
}

/** The phone's network changed (wx.onNetworkStatusChange's answer). */
function network(status) {
  if (status && status.isConnected) emit("online");
}

module.exports = { hidden, network, shown, subscribe };
