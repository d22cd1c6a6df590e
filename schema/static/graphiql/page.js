// Starts GraphiQL from the settings schema/graphiql.py puts in the page as JSON.
// A file, not an inline script, so the page's CSP can allow scripts from 'self' only.
(function () {
  "use strict";
  var config = JSON.parse(document.getElementById("graphiql-config").textContent);

  // The walk-through opens on a first visit; after that GraphiQL restores the
  // visitor's own tabs from localStorage. GraphiQL 3.8 reads a first tab's variables
  // only from storage (or its `variables` prop, which would override stored ones on
  // every visit), so a first visit puts the example's there.
  try {
    if (window.localStorage.getItem("graphiql:tabState") === null) {
      window.localStorage.setItem("graphiql:variables", config.variables);
    }
  } catch (error) {
    // Storage blocked: GraphiQL opens with the example's query and headers only.
  }

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({ url: config.url }),
      defaultQuery: config.query,
      defaultHeaders: config.headers,
      defaultEditorToolsVisibility: "variables",
      isHeadersEditorEnabled: true,
      inputValueDeprecation: true,
    }),
  );
})();
