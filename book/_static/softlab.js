// softlab book: the article header's sidebar toggle (sphinx-book-theme) opens the chapter list.
// pydata-sphinx-theme wires only the first ".primary-toggle" on the page (its own navbar button,
// hidden in this layout), so the visible toggle did nothing; it now forwards its click to that
// button, which collapses the sidebar on wide screens and opens the chapter list on phones.
document.addEventListener("DOMContentLoaded", () => {
  const toggles = Array.from(document.querySelectorAll(".primary-toggle"));
  const wired = toggles[0];
  toggles.slice(1).forEach((button) => {
    button.addEventListener("click", (event) => {
      event.preventDefault();
      event.stopPropagation();
      wired.click();
    });
  });
});

// On a phone, a table is shown one row at a time (CSS in softlab.css, class softlab-stacked):
// each cell carries its column's name.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".bd-article table").forEach((table) => {
    const names = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
    if (!names.length) return;
    table.classList.add("softlab-stacked");
    table.querySelectorAll("tbody tr").forEach((row) => {
      Array.from(row.children).forEach((cell, i) => {
        if (names[i]) cell.setAttribute("data-label", names[i]);
      });
    });
  });
});

// A displayed equation wider than the column (a phone) is scaled down to fit it, once MathJax
// has typeset the page.
function fitEquations() {
  document.querySelectorAll('.bd-article mjx-container[display="true"]').forEach((eq) => {
    eq.style.fontSize = "";
    eq.style.minWidth = "0";
    const room = eq.parentElement.clientWidth;
    let size = 100;
    for (let pass = 0; pass < 6 && room > 0 && eq.scrollWidth > room; pass++) {
      size = Math.floor((size * room) / eq.scrollWidth) - 1;
      eq.style.fontSize = `${size}%`;
    }
  });
}
window.addEventListener("load", () => {
  const ready = window.MathJax && MathJax.startup && MathJax.startup.promise;
  (ready ? MathJax.startup.promise : Promise.resolve()).then(fitEquations);
});
window.addEventListener("resize", fitEquations);
