// Starts Swagger UI on #swagger-ui with the document named by its data-url (a file, not an inline
// script, so the page's Content-Security-Policy can forbid inline scripts).
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.url,
    dom_id: "#swagger-ui",
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
    layout: "BaseLayout",
    deepLinking: true,
    showExtensions: true,
    validatorUrl: null, // no badge fetched from validator.swagger.io
    persistAuthorization: false,
  });
});
