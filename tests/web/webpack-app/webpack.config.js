// webpack 5, production mode, no loaders: what a user's webpack.config.js needs for webpeft.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export default {
  mode: "production",
  entry: join(here, "main.js"),
  output: { path: join(here, "dist"), filename: "main.js", clean: true },
  performance: { hints: false },
};
