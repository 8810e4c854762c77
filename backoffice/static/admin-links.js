// Links that only open a menu or add a filter point at "#" (the Content-Security-Policy refuses javascript:
// links and inline handlers); a click on one must not jump to the top of the page or add "#" to its address.
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest('a[href="#"]');
  if (link) {
    event.preventDefault();
  }
});

// Flask-Admin's list filters draw their multiple-choice boxes with select2 after the page loads: its search
// box and the "x" that removes a chosen value come without a name. Name each as it appears.
(function () {
  function name(root) {
    root.querySelectorAll("input.select2-input:not([aria-label])").forEach(function (input) {
      input.setAttribute("aria-label", "Filter value");
    });
    root.querySelectorAll("a.select2-search-choice-close:not([aria-label])").forEach(function (link) {
      var chosen = link.parentNode && link.parentNode.textContent.trim();
      link.setAttribute("aria-label", "Remove " + (chosen || "this value"));
      link.setAttribute("role", "button");
    });
  }
  function watch() {
    name(document);
    new MutationObserver(function () { name(document); })
      .observe(document.body, { childList: true, subtree: true });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", watch);
  } else {
    watch();
  }
})();
