#!/usr/bin/env node
import '../dist/src/supervisor/main.js';
