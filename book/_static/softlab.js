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

// On a phone, a wide table is shown one row at a time (CSS in softlab.css): each cell carries
// its column's name.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.softlab-table").forEach((table) => {
    const names = Array.from(table.querySelectorAll("thead th")).map((th) => th.textContent.trim());
    table.querySelectorAll("tbody tr").forEach((row) => {
      Array.from(row.children).forEach((cell, i) => {
        if (names[i]) cell.setAttribute("data-label", names[i]);
      });
    });
  });
});
