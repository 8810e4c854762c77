// A refused form's error summary (templates/_errors.html) takes the focus when the page opens, so a keyboard or
// screen-reader user starts from the list of problems. Its autofocus attribute does this too, but not when the
// page's address ends in a fragment (a form sent after following the skip link to #main): the browser then
// focuses the fragment's target, so the summary is focused again once the page has loaded.
(function () {
  function focusSummary() {
    var summary = document.querySelector(".error-summary");
    if (summary && !summary.contains(document.activeElement)) {
      summary.focus();
    }
  }
  var focusedOnce = false;
  function once() {
    if (!focusedOnce) {
      focusedOnce = true;
      focusSummary();
    }
  }
  document.addEventListener("DOMContentLoaded", focusSummary);
  window.addEventListener("load", once);
})();
