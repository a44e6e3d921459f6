// The log page's follow switch: while it is on, new lines scroll into view; scrolling up
// turns it off, scrolling back to the end turns it on again.
(function () {
  const log = document.getElementById("log");
  const follow = document.getElementById("follow");
  if (!log || !follow) return;
  const toEnd = () => { if (follow.checked) log.scrollTop = log.scrollHeight; };
  document.body.addEventListener("htmx:afterSettle", (event) => {
    if (event.detail.target === log) toEnd();
  });
  log.addEventListener("scroll", () => {
    follow.checked = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  });
  follow.addEventListener("change", toEnd);
  toEnd();
})();
