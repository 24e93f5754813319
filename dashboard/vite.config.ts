import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// `npm run dev` proxies the API of `make dev`; the built files are served by the API itself.
export default defineConfig({
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 400 },
  server: {
    proxy: {
      "/api": "http://127.0.0.1:8000",
      "/config.json": "http://127.0.0.1:8000",
    },
  },
});
