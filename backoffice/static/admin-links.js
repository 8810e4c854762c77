// Links that only open a menu or add a filter point at "#" (the Content-Security-Policy refuses javascript:
// links and inline handlers); a click on one must not jump to the top of the page or add "#" to its address.
document.addEventListener("click", function (event) {
  var link = event.target.closest && event.target.closest('a[href="#"]');
  if (link) {
    event.preventDefault();
  }
});
